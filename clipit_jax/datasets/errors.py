"""The one error of the datasets: a file or a prepared dataset that cannot be used."""


class DatasetError(ValueError):
  """A dataset file is missing, unreadable or inconsistent; the message says what to do."""
