"""A local DynamoDB that bills and refuses like AWS (moto underneath): see server.py."""
