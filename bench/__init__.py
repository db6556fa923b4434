import sinker  # noqa: F401 - binds sinker_lib to this checkout's lib/ (see sinker.py)
