"""Predicted customer value: CLV models fitted on the brand's orders, stored as computed attributes.

The statistics live in the pure library ``siyu.clv``; this app reads the orders, fits, and keeps
each customer's newest prediction (docs/clv.md).
"""
