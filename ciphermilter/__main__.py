from ciphermilter.cli import main

main()
