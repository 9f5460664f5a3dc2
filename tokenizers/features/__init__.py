"""Frame-level feature extractors (registry: ``slmtok.registry.FEATURES``).

Every extractor maps mono audio ``[T]`` at its ``sample_rate`` to frames ``[T', D]`` and tells how many
frames a given number of samples gives (``num_frames``). Items are processed one at a time so that a
padded batch never leaks padding into an item's features.
"""
