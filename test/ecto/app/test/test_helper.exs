ExUnit.start()
Ecto.Adapters.SQL.Sandbox.mode(EctoCheck.Repo, :manual)
