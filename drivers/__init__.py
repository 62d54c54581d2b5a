"""Drivers: hardware and input sources that yield raw scans; they know nothing of vouchers."""
