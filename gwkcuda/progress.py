"""Progress bars (tqdm) for long steps, off unless asked for (the CLI asks on a terminal)."""
try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def progress(iterable=None, enabled: bool = False, **kwargs):
    """tqdm over ``iterable`` when enabled and tqdm is installed; otherwise the iterable itself
    (or, with no iterable, a bar that ignores every call)."""
    if enabled and tqdm is not None:
        return tqdm(iterable, **kwargs)
    return iterable if iterable is not None else _Silent()


class _Silent:
    def update(self, *args, **kwargs):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
