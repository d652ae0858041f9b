from webapp.app import main

if __name__ == "__main__":  # not in a worker process, which imports this module again to start
    main()
