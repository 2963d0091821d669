#!/usr/bin/env bash
# Runs every test in three phases on the services scripts/services.sh started:
#   1. Redis, token, waiting-room and gateway suites (some measure time: ticks, expiries);
#   2. BoxOffice and the browser journey, whose stampedes (1,500 concurrent requests) and
#      Chromium would otherwise starve phase 1's timing on a 2-core machine;
#   3. the on-sale simulator (2,000 visitors), alone: it measures rate and cap.
# Usage: scripts/run-tests.sh [swift test flags…]
set -euo pipefail
heavy='BoxOfficeTests|JourneyTests|LoadTests'
swift test "$@" --skip-build --skip "$heavy"
swift test "$@" --skip-build --filter 'BoxOfficeTests|JourneyTests'
swift test "$@" --skip-build --filter LoadTests
