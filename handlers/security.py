"""Image scans (unit ``security``): security.scan_requested -> docker_security_scan ->
security.scan_completed, plus security.issue_found when anything was found."""

from __future__ import annotations

from bus.context import HandlerContext
from bus.errors import Reject
from bus.router import Router
from handlers.toolcalls import call_tool
from schemas.events import SecurityIssueFound, SecurityScanCompleted, SecurityScanRequested
from tools.errors import ToolFailed

router = Router("security")


@router.subscribe("security.scan_requested", name="security.scan")
async def scan(req: SecurityScanRequested, ctx: HandlerContext) -> None:
    """Scan the image and report."""
    try:
        result = await call_tool(
            ctx,
            "security-scanner.docker_security_scan",
            {"image": req.image, "severity": req.severity},
        )
    except ToolFailed as exc:
        raise Reject(f"scan of {req.image} failed: {exc}") from exc
    ids = sorted({v.id for v in result.vulnerabilities})
    await ctx.publish(
        "security.scan_completed",
        SecurityScanCompleted(
            image=req.image,
            severity=req.severity,
            app=req.app,
            version=req.version,
            total_vulnerabilities=result.total_vulnerabilities,
            passed=result.total_vulnerabilities == 0,
            vulnerability_ids=ids[:200],
            flow_id=req.flow_id,
        ),
    )
    if result.total_vulnerabilities:
        await ctx.publish(
            "security.issue_found",
            SecurityIssueFound(
                issue=f"{result.total_vulnerabilities} vulnerabilities at or above "
                f"{req.severity} in {req.image}",
                severity=req.severity,
                app=req.app,
                version=req.version,
                image=req.image,
                vulnerability_ids=ids[:200],
            ),
        )
