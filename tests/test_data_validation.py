"""Bad input gets a clear error naming the column, individual or value."""

import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.kernels import SE
from mtgp.exceptions import DataError


def frame():
    return pd.DataFrame({"ID": ["a", "a", "a", "b", "b", "c"],
                         "Input": [0.0, 1.0, 2.0, 0.5, 1.5, 1.0],
                         "Output": [1.0, 2.0, 1.5, 0.3, 0.9, 1.1]})


def to_inds(df, **kw):
    return mtgp.data.to_individuals(df, **kw)


def test_valid_frame_groups_in_order_and_keeps_single_point_individual():
    inds = to_inds(frame())
    assert inds.ids == ["a", "b", "c"]
    assert [len(y) for y in inds.outputs] == [3, 2, 1]
    np.testing.assert_array_equal(inds.inputs[1][:, 0], [0.5, 1.5])


@pytest.mark.parametrize("column", ["ID", "Output"])
def test_missing_column(column):
    with pytest.raises(DataError, match=f"missing column '{column}'"):
        to_inds(frame().drop(columns=column))


def test_missing_input_column():
    with pytest.raises(DataError, match="no input column"):
        to_inds(frame().rename(columns={"Input": "Age"}))
    with pytest.raises(DataError, match=r"missing input column\(s\) \['Age'\]"):
        to_inds(frame(), input_columns=["Age"])
    inds = to_inds(frame().rename(columns={"Input": "Age"}), input_columns=["Age"])
    assert inds.input_columns == ["Age"]


def test_empty_table():
    with pytest.raises(DataError, match="empty"):
        to_inds(frame().iloc[:0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("column", ["Input", "Output"])
def test_non_finite_values_name_column_and_row(bad, column):
    df = frame()
    df.loc[3, column] = bad
    with pytest.raises(DataError, match=rf"{column}.*non-finite.*row\(s\) 3"):
        to_inds(df)


def test_non_numeric_values_name_column_rows_and_values():
    df = frame()
    df["Output"] = df["Output"].astype(object)
    df.loc[2, "Output"] = "heavy"
    df.loc[4, "Output"] = "?"
    with pytest.raises(DataError, match=r"column 'Output' is not numeric: row\(s\) 2, 4 hold 'heavy', '\?' "
                                        r"\(individual 'a'\)"):
        to_inds(df)
    df.loc[[2, 4], "Output"] = ["1.5", "0.9"]   # numbers kept as text are named as such
    with pytest.raises(DataError, match=r"row\(s\) 2, 4 hold '1.5', '0.9' \(numbers stored as text: convert"):
        to_inds(df)


def test_object_columns_of_numbers_are_accepted_and_odd_dtypes_refused():
    from mtgp.data import as_float_matrix

    cells = pd.DataFrame({"a": pd.Series([1, 2.5, None, np.int64(3)], dtype=object),
                          "b": pd.array([1.0, None, 2.0, 3.0], dtype="Float64")})
    np.testing.assert_array_equal(as_float_matrix(cells, allow_nan=True),
                                  [[1.0, 1.0], [2.5, np.nan], [np.nan, 2.0], [3.0, 3.0]])
    with pytest.raises(DataError, match=r"X: a has non-finite values \(NaN\) at row\(s\) 2"):
        as_float_matrix(cells)
    with pytest.raises(DataError, match=r"column 'flag' is boolean, not numeric"):
        as_float_matrix(pd.DataFrame({"flag": [True, False]}))
    with pytest.raises(DataError, match=r"column 'day' holds dates or durations"):
        as_float_matrix(pd.DataFrame({"day": pd.date_range("2020-01-01", periods=3)}))
    with pytest.raises(DataError, match=r"contains non-numeric values \(dtype object\): 'abc' is not a number"):
        as_float_matrix(np.array([[1.0, "abc"]], dtype=object))
    with pytest.raises(DataError, match=r"Y: column 1 has non-finite values \(inf\) at row\(s\) 0 "
                                        r"\(NaN marks a missing value here; inf is not allowed\)"):
        as_float_matrix(np.array([[1.0, np.inf], [np.nan, 1.0]]), "Y", allow_nan=True)


def test_missing_id():
    df = frame()
    df["ID"] = df["ID"].astype(object)
    df.loc[1, "ID"] = None
    with pytest.raises(DataError, match="'ID' has missing values at row"):
        to_inds(df)


def test_duplicate_inputs_within_individual_are_reported_not_averaged():
    df = pd.concat([frame(), frame().iloc[[4]]], ignore_index=True)
    with pytest.raises(DataError, match=r"individual 'b' has several rows at the same input \(Input=1.5\)"):
        to_inds(df)
    # the same input in two different individuals is fine
    assert to_inds(frame()).n_individuals == 3


def test_extra_columns_warn_that_they_are_unused():
    df = frame().assign(Sex="f")
    with pytest.warns(UserWarning, match=r"\['Sex'\] are not used"):
        to_inds(df)


def test_arrays_and_dicts():
    inds = mtgp.data.to_individuals({"x": (np.arange(3.0), np.ones(3)), 7: ([[0.0], [1.0]], [1.0, 2.0])})
    assert inds.ids == ["x", 7] and inds.input_dim == 1
    with pytest.raises(DataError, match="3 input rows but 2 outputs"):
        mtgp.data.to_individuals({"x": (np.arange(3.0), np.ones(2))})
    with pytest.raises(DataError, match="different dimensions"):
        mtgp.data.to_individuals([(np.zeros((2, 1)), np.ones(2)), (np.zeros((2, 2)), np.ones(2))])
    with pytest.raises(DataError, match="expected a DataFrame"):
        mtgp.data.to_individuals("not data")


def test_kernel_dimension_must_match_data():
    with pytest.raises(ValueError, match="expects 2-dimensional inputs"):
        mtgp.Magma(SE(lengthscale=[1.0, 1.0]), SE()).fit(frame(), optimize=False)
    with pytest.raises(ValueError, match="cannot combine kernels of input dimensions 2 and 3"):
        SE(lengthscale=[1.0, 1.0]) + SE(lengthscale=[1.0, 1.0, 1.0])


def test_kernel_parameters_validated():
    with pytest.raises(ValueError, match="variance must be positive"):
        SE(variance=-1.0)
    with pytest.raises(ValueError, match="lengthscale must be positive"):
        SE(lengthscale=[1.0, np.nan])


def test_prediction_inputs_and_new_individual_checked():
    model = mtgp.Magma(SE(), SE(), noise=0.5).fit(frame(), optimize=False)
    with pytest.raises(DataError, match="dimension 2 but the model was trained on 1-dimensional"):
        model.predict(None, inputs=np.zeros((4, 2)))
    with pytest.raises(DataError, match="non-finite"):
        model.hyperposterior([0.0, np.nan])
    with pytest.raises(DataError, match="expected one individual, got 2"):
        model.predict(frame().iloc[:4], inputs=[1.0])
    two = pd.DataFrame({"Input": [0.0, 0.0], "Output": [1.0, 2.0]})
    with pytest.raises(DataError, match="several rows at the same input"):
        model.predict(two, inputs=[1.0])
    pred = model.predict(pd.DataFrame({"Input": [0.3], "Output": [1.0]}), inputs=[0.0, 1.0])
    assert pred.mean.shape == (2,)


def test_not_fitted_and_bad_options():
    with pytest.raises(mtgp.NotFittedError):
        mtgp.Magma().predict(None, inputs=[1.0])
    with pytest.raises(ValueError, match="mean_update"):
        mtgp.Magma(mean_update="bogus").fit(frame())
    with pytest.raises(ValueError, match="noise must be positive"):
        mtgp.Magma(noise=0.0).fit(frame())
    with pytest.raises(TypeError, match="must be an mtgp.kernels.Kernel"):
        mtgp.Magma(mean_kernel="SE").fit(frame())
