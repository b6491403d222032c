"""Monitoring: the Prometheus metrics objects, the dashboards and rules (package data), the
Prometheus HTTP client and local server, scraping and PNG charts.
"""
