from lsi.cli.main import main

raise SystemExit(main())
