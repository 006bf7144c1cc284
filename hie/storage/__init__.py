"""Storage: tables, the database engine and the one repository that reads and writes them."""
