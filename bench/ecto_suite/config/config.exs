import Config

config :logger, level: :warning
config :ecto_suite, ecto_repos: [EctoSuite.Repo]
