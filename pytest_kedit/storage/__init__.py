"""Files that several processes share, knowing nothing of the benchmark: the cache folder and its
locks, cache entries verified against their digests when read (rebuilt once when damaged),
atomic writes, and JSON-lines logs that survive a process killed mid-line; and the progress bars
of long work, paced for a terminal or a log.
"""
