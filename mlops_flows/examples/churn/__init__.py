"""The churn example: a seeded simulator of its Feast sources and labels."""
