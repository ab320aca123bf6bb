# Convenience targets; ./bootstrap does the work so a fresh machine needs no make.
.PHONY: run test bench setup
run:
	./bootstrap run
test:
	./bootstrap test
bench:
	./bootstrap bench
setup:
	./bootstrap setup
