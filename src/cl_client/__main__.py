"""``python -m cl_client``: the ``cl-client`` command line."""

from cl_client.cli import main

if __name__ == "__main__":
    main()
