from skipinit.cli import main

main()
