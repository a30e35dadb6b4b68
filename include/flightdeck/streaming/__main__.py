from flightdeck.streaming.cli import main

if __name__ == "__main__":
    main()
