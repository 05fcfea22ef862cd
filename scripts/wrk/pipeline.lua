-- wrk script: pipelined requests, PIPELINE_DEPTH per write (TechEmpower style).
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")
local path = os.getenv("PIPELINE_PATH") or "/plaintext"

init = function(args)
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format("GET", path)
  end
  req = table.concat(batch)
end

request = function()
  return req
end
