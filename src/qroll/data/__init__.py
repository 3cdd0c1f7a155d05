"""Market data: sources opened by URI, Alpha158/Alpha360 features computed once, processors,
handlers and datasets with Qlib's semantics.
"""

from qroll.data.cache import FeatureCache
from qroll.data.dataset import DatasetH
from qroll.data.features import alpha158_config, alpha360_config, compute_features
from qroll.data.handler import Alpha158, Alpha360, DataHandlerLP
from qroll.data.processors import (
    CSRankNorm,
    CSZFillna,
    CSZScoreNorm,
    DropCol,
    DropnaFeature,
    DropnaLabel,
    DropnaProcessor,
    Fillna,
    FilterCol,
    MinMaxNorm,
    ProcessInf,
    Processor,
    RobustZScoreNorm,
    TanhProcess,
    ZScoreNorm,
)
from qroll.data.qlib_append import QlibAppend, append_qlib_bin
from qroll.data.qlib_bin import QlibBinSource, dump_qlib_bin
from qroll.data.source import Source, open_source
from qroll.data.synthetic import SyntheticMarket
from qroll.data.table import TableSource
from qroll.data.uri import DEFAULT_SOURCE, SourceURI, parse_source_uri

__all__ = [
    "DEFAULT_SOURCE",
    "Alpha158",
    "Alpha360",
    "CSRankNorm",
    "CSZFillna",
    "CSZScoreNorm",
    "DataHandlerLP",
    "DatasetH",
    "DropCol",
    "DropnaFeature",
    "DropnaLabel",
    "DropnaProcessor",
    "FeatureCache",
    "Fillna",
    "FilterCol",
    "MinMaxNorm",
    "ProcessInf",
    "Processor",
    "QlibAppend",
    "QlibBinSource",
    "RobustZScoreNorm",
    "Source",
    "SourceURI",
    "SyntheticMarket",
    "TableSource",
    "TanhProcess",
    "ZScoreNorm",
    "alpha158_config",
    "append_qlib_bin",
    "alpha360_config",
    "compute_features",
    "dump_qlib_bin",
    "open_source",
    "parse_source_uri",
]
