from dxserve.cli import main

main()
