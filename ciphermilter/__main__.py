from ciphermilter.cli.main import main

main()
