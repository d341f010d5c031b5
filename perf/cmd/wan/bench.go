package main

import "errors"

func runBench(o options) error { return errors.New("not yet") }
