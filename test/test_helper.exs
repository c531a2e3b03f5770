# Tests use real clients only: psql and pgbench (Debian), psycopg 3 (PyPI).
for tool <- ["psql", "pgbench", "python3"] do
  System.find_executable(tool) || raise "the tests need #{tool}: run .ci/run, or see README.md"
end

{_, 0} = System.cmd("python3", ["-c", "import psycopg"], stderr_to_stdout: true)
ExUnit.start(timeout: 180_000)
