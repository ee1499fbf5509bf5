"""Data: validation of user input (:mod:`~mtgp.data.validation`), groups of
points with their own inputs (:mod:`~mtgp.data.individuals`), and the padded
batched layouts the numerics run on (:mod:`~mtgp.data.layout`)."""

from .individuals import (ID_COLUMN, OUTPUT_COLUMN, Individuals, as_inputs, default_input_columns,
                          individuals_from_frame, to_individuals)
from .layout import (Buckets, Padded, bin_inputs, bucket_individuals, bucket_sizes, grouping_pays,
                     input_patterns, pad_individuals, pad_observations, padded_size, pooled_grid)
from .partitioned import RemoteIndividuals, is_dask_frame, read_parquet_individuals
from .validation import as_float_matrix, check_input_dim, check_same_rows

__all__ = ["ID_COLUMN", "OUTPUT_COLUMN", "Individuals", "to_individuals", "individuals_from_frame",
           "default_input_columns", "as_inputs", "Padded", "Buckets", "pooled_grid", "pad_individuals",
           "bucket_individuals", "bucket_sizes", "input_patterns", "grouping_pays", "bin_inputs", "padded_size", "pad_observations",
           "as_float_matrix", "check_input_dim", "check_same_rows",
           "read_parquet_individuals", "is_dask_frame", "RemoteIndividuals"]
