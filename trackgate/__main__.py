from trackgate.cli import main

main()
