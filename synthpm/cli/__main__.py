from synthpm.cli import main

main()
