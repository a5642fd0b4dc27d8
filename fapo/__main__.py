from fapo.cli import main

main()
