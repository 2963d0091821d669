#!/usr/bin/env bash
# Runs every test in two phases on the services scripts/services.sh started:
#   1. Redis, token, waiting-room and gateway suites (some measure time: ticks, expiries);
#   2. BoxOffice and the browser journey, whose stampedes (1,500 concurrent requests) and
#      Chromium would otherwise starve phase 1's timing on a 2-core machine.
# Usage: scripts/run-tests.sh [swift test flags…]
set -euo pipefail
heavy='BoxOfficeTests|JourneyTests'
swift test "$@" --skip-build --skip "$heavy"
swift test "$@" --skip-build --filter "$heavy"
