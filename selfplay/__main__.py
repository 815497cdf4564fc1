from selfplay.commands.cli import main

raise SystemExit(main())
