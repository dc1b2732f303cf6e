"""The wire: message types, the bounded msgpack codec, the args codec. Imports only errors."""
