from neurofm.cli import main

main()
