from training_agent.entrypoints.cli import main

main()
