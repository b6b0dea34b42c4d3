#!/usr/bin/env node
// The compiled CLI lives in dist/ (make build); this file only points at it.
import '../dist/src/cli/main.js';
