defmodule PgliteEx.Server.Scram do
  @moduledoc """
  The server side of SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it: no channel
  binding, the user name taken from the StartupMessage.
  """

  @iterations 4096

  @typedoc "What the server keeps of a password: never the password itself."
  @type secret :: %{salt: binary(), iterations: pos_integer(), stored_key: binary(), server_key: binary()}

  @doc "Derives the stored secret from a password with a fresh random salt."
  @spec secret(String.t()) :: secret()
  def secret(password) do
    salt = :crypto.strong_rand_bytes(16)
    salted = :crypto.pbkdf2_hmac(:sha256, password, salt, @iterations, 32)
    client_key = hmac(salted, "Client Key")

    %{
      salt: salt,
      iterations: @iterations,
      stored_key: :crypto.hash(:sha256, client_key),
      server_key: hmac(salted, "Server Key")
    }
  end

  @doc """
  Reads the client-first-message; returns the server-first-message and the state to
  check the client's final message with.
  """
  @spec server_first(binary(), secret()) :: {:ok, binary(), map()} | {:error, String.t()}
  def server_first(client_first, secret) do
    with [gs2, bare] <- split_gs2(client_first),
         :ok <- check_gs2(gs2),
         %{"r" => client_nonce} <- attributes(bare) do
      nonce = client_nonce <> Base.encode64(:crypto.strong_rand_bytes(18))
      server_first = "r=#{nonce},s=#{Base.encode64(secret.salt)},i=#{secret.iterations}"
      {:ok, server_first, %{bare: bare, server_first: server_first, nonce: nonce}}
    else
      {:error, _} = error -> error
      _ -> {:error, "malformed SCRAM client-first-message"}
    end
  end

  @doc "Checks the client's proof; returns the server-final-message on success."
  @spec server_final(binary(), map(), secret()) :: {:ok, binary()} | {:error, :bad_proof | String.t()}
  def server_final(client_final, exchange, secret) do
    with [without_proof, proof_b64] <- String.split(client_final, ",p=", parts: 2),
         %{"r" => nonce} when nonce == exchange.nonce <- attributes(without_proof),
         {:ok, proof} <- Base.decode64(proof_b64),
         true <- byte_size(proof) == 32 do
      auth_message = Enum.join([exchange.bare, exchange.server_first, without_proof], ",")
      client_signature = hmac(secret.stored_key, auth_message)
      client_key = :crypto.exor(proof, client_signature)

      if :crypto.hash_equals(:crypto.hash(:sha256, client_key), secret.stored_key) do
        {:ok, "v=" <> Base.encode64(hmac(secret.server_key, auth_message))}
      else
        {:error, :bad_proof}
      end
    else
      _ -> {:error, "malformed SCRAM client-final-message"}
    end
  end

  defp split_gs2(message) do
    case String.split(message, ",", parts: 3) do
      [cb, authzid, bare] -> [{cb, authzid}, bare]
      _ -> :error
    end
  end

  defp check_gs2({cb, _authzid}) when cb in ["n", "y"], do: :ok
  defp check_gs2(_), do: {:error, "channel binding is not supported"}

  defp attributes(text) do
    text
    |> String.split(",")
    |> Enum.flat_map(fn
      <<key::binary-size(1), "=", value::binary>> -> [{key, value}]
      _ -> []
    end)
    |> Map.new()
  end

  defp hmac(key, data), do: :crypto.mac(:hmac, :sha256, key, data)
end
