"""Data-quality expectations of the lake's tables, from conf, run with Great Expectations."""
