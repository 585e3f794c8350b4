"""Database mechanics: COPY / prepared inserts, PostgreSQL partitions, rollups and the
statistics read from them."""
