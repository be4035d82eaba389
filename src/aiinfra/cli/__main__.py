from aiinfra.cli.app import main

main()
