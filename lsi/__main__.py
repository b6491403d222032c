from lsi.cli import main

raise SystemExit(main())
