from edgecall.cli.main import main

main()
