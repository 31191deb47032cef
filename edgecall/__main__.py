from edgecall.cli.main import main

if __name__ == "__main__":  # guarded: helper processes (fast5 reading) re-import the main module
    main()
