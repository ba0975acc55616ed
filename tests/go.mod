module github.com/reviewpipe/reviewpipe/tests

go 1.26.0

replace github.com/reviewpipe/reviewpipe/pkg => ../pkg
