-- count_output.lua: busted output handler: busted's plain terminal report, then one line
-- "N passed, N failed" (errors count as failures; pending tests are reported as skipped) that
-- tests/run_all.sh sums across every C and Lua test binary.
return function(options)
  local busted = require 'busted'
  local handler = require 'busted.outputHandlers.plainTerminal'(options)
  busted.subscribe({ 'suite', 'end' }, function()
    local failed = handler.failuresCount + handler.errorsCount
    if handler.pendingsCount > 0 then
      io.write(string.format('%d skipped (see the pending notes above for why)\n', handler.pendingsCount))
    end
    io.write(string.format('%d passed, %d failed\n', handler.successesCount, failed))
    io.flush()
    return nil, true
  end)
  return handler
end
