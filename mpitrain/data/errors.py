"""The one exception the data layer raises for bad or missing data."""


class DataError(ValueError):
    """A data file is broken (message ``"<path>:<line>: <what is wrong>"``) or a named
    data set cannot be found or fetched (the message says where to put it)."""
