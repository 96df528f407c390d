"""churnlens: churn prediction from usage and purchase logs."""

__version__ = "0.1.0"
