"""Placeholder replaced by the demo generator."""


def build_demo(customers: int, seed: int, progress: bool = True) -> dict:
    raise NotImplementedError
