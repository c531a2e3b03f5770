EctoSuite.Setup.suite()
ExUnit.start()
