"""headwater's Dagster side: assets are the tables of conf/, runs are the streams.

Imports streaming/; streaming/ never imports this package.
"""
