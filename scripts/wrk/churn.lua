-- wrk script: connection churn. Every 10th request asks the server to close, so each
-- connection serves 10 requests and wrk reconnects (the profile where single-accept
-- servers fall behind).
local n = 0
local path = os.getenv("CHURN_PATH") or "/plaintext"

request = function()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("GET", path, { ["Connection"] = "close" })
  end
  return wrk.format("GET", path)
end
