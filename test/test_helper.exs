# Tests use real clients only: psql and pgbench (Debian), psycopg 3 (PyPI), node-postgres
# (npm), the PostgreSQL JDBC driver (Debian).
for tool <- ["psql", "pgbench", "python3", "node", "java"] do
  System.find_executable(tool) || raise "the tests need #{tool}: run .ci/run, or see README.md"
end

File.exists?("/usr/share/java/postgresql.jar") ||
  raise "the tests need the PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java): run .ci/run"

{_, 0} = System.cmd("python3", ["-c", "import psycopg"], stderr_to_stdout: true)
ExUnit.start(timeout: 180_000)
