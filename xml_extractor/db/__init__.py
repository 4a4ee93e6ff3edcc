"""Database access: one dialect module per driver, named SQL in sql/, schema and writes in store."""
