"""Vectorised renderer of a grayscale mouth region (all frames at once on a pixel grid).

The mouth is drawn in a head-fixed frame (``u`` right, ``v`` down, pixels, origin at the
lip seam) that moves with a smooth head motion (translation, roll, zoom). Layers, back to
front: skin (with nostrils, philtrum, nasolabial folds and the shadow under the lower lip),
lips (outer contour with a Cupid's bow; lower lip fuller with a highlight), mouth cavity
(darker deeper inside), tongue, teeth (upper band, lower band on wide openings, upper teeth
over the lower lip for labiodentals). Every edge is a sigmoid of a signed distance (about
one pixel wide, so no aliasing). Then a slow light change and sensor noise; the bilinear
warp of the head motion blurs the image slightly, like a camera.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from preparation.synthetic.speakers import Appearance

SIZE = 96


def _soft(x: torch.Tensor, width: float = 0.7) -> torch.Tensor:
    """Soft step: 0 for ``x << 0``, 1 for ``x >> 0`` (``x`` in pixels)."""
    return torch.sigmoid(x / width)


def smooth_noise(n: int, gen: torch.Generator, smooth_frames: float) -> torch.Tensor:
    """Slow random motion ``(n,)``: white noise low-passed by a Gaussian of std
    ``smooth_frames`` frames, scaled to unit std."""
    radius = int(3 * smooth_frames) + 1
    raw = torch.randn(n + 2 * radius, generator=gen)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / smooth_frames) ** 2)
    out = F.conv1d(raw.view(1, 1, -1), (k / k.sum()).view(1, 1, -1))[0, 0]
    return out / out.std().clamp_min(1e-6) if n > 1 else out * 0


def head_pose(n_frames: int, face: Appearance, gen: torch.Generator) -> torch.Tensor:
    """Head motion ``(T, 4)``: x shift, y shift (pixels), roll (radians), zoom (factor)."""
    m = face.motion
    dx = 1.2 * m * smooth_noise(n_frames, gen, 6.0)
    dy = 0.9 * m * smooth_noise(n_frames, gen, 7.0)
    roll = face.tilt + 0.025 * m * smooth_noise(n_frames, gen, 9.0)
    zoom = 1.0 + 0.02 * m * smooth_noise(n_frames, gen, 12.0)
    return torch.stack([dx, dy, roll, zoom], dim=1)


def _skin(face: Appearance, mean_width: float, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Static skin of the lower face in head coordinates ``(H, W)``: nostrils, the shadow
    under the nose, the philtrum groove and the nasolabial folds."""
    S = face.mouth_scale
    au = u.abs()
    nose_y = -(S * 14.0 + 22.0)
    nostrils = torch.exp(-(((au - S * 10.0) / 4.0) ** 2) - ((v - nose_y) / 2.6) ** 2)
    nose_shadow = torch.exp(-((v - nose_y - 4.0) / 7.0) ** 2)
    philtrum = torch.exp(-((u / 2.2) ** 2)) * _soft(v - nose_y - 3.0, 2.0) * _soft(-S * 3.5 - v, 1.5)
    fold_x = mean_width + 9.0 + 0.25 * (v - 2.0).abs()
    folds = torch.exp(-(((au - fold_x) / 2.5) ** 2)) * _soft(v + 22.0, 4.0) * _soft(22.0 - v, 4.0)
    return face.skin * (1.0 - 0.45 * nostrils - 0.1 * nose_shadow - 0.06 * philtrum - 0.07 * folds)


def _mouth(params: torch.Tensor, face: Appearance, skin: torch.Tensor, u: torch.Tensor,
           v: torch.Tensor) -> torch.Tensor:
    """Mouth layers over ``skin (h, w)`` on the head-coordinate window with pixel centres
    ``u (w,)``, ``v (h,)``; returns ``(T, h, w)``. Terms that depend on one axis only are
    computed on that axis, so most full-size work is a few subtractions and sigmoids."""
    T = params.size(0)
    S = face.mouth_scale
    col = lambda x: x.view(T, 1, 1)  # noqa: E731 - per-frame scalars
    opening, width, rnd = params[:, 0], params[:, 1].clamp(0, 1), params[:, 2].clamp(0, 1)
    teeth, tongue, bite = params[:, 3].clamp(0, 1), params[:, 4].clamp(0, 1), params[:, 5].clamp(0, 1)
    o = opening.clamp_min(0.0)
    press = (-opening).clamp_min(0.0)
    W = col(S * (16.5 + 7.0 * width - 5.5 * rnd))  # half width, corner to corner
    h = col(S * (0.35 + 10.5 * o))  # half of the inner opening
    Wi = W * col(0.8 - 0.12 * rnd)  # half width of the inner opening
    tu = col(S * face.upper_lip * (4.2 + 2.0 * rnd) * (1 - 0.5 * press))  # upper lip thickness
    tl = col(S * face.lower_lip * (5.0 + 2.5 * rnd) * (1 - 0.5 * press))  # lower lip thickness
    U = u.view(1, 1, -1)  # (1, 1, w)
    V = v.view(1, -1, 1)  # (1, h, 1)
    au = U.abs()
    # horizontal profiles (T, 1, w)
    xn = au / W
    e_out = (1 - xn ** 2).clamp_min(0).sqrt()
    e_in = (1 - (U / Wi) ** 2).clamp_min(0).sqrt()
    bow = 1 + 0.18 * torch.exp(-(((xn - 0.3) / 0.14) ** 2)) - 0.22 * torch.exp(-((xn / 0.09) ** 2))
    y_ui = -0.8 * h * e_in  # inner edge of the upper lip (the jaw moves the lower lip more)
    y_li = 1.2 * h * e_in
    y_uo = y_ui - tu * e_out.pow(0.7) * bow
    y_lo = y_li + tl * e_out.pow(0.6)
    in_w = _soft(W - au)
    in_wi = _soft(Wi - au)
    # full-size masks (T, h, w)
    lips = _soft(V - y_uo) * _soft(y_lo - V) * in_w
    cavity = _soft(V - y_ui) * _soft(y_li - V) * in_wi

    # skin: shadow under the lower lip; lips: darker, lower-lip highlight, darker corners
    under = torch.exp(-(((V - y_lo - 3.5) / 2.8) ** 2)) * _soft(0.85 * W - au, 3.0)
    img = skin * (1.0 - 0.16 * under)
    hl_u = torch.exp(-((U / (0.45 * W)) ** 2))  # (T, 1, w)
    hl_v = torch.exp(-(((V - 1.2 * h - 0.45 * tl) / (0.3 * tl)) ** 2))  # (T, h, 1)
    lip_shade = face.skin * face.lip_ratio * ((1.0 - 0.12 * xn.clamp(max=1.0) ** 2) + 0.14 * hl_u * hl_v)
    img = img + (lip_shade - img) * lips

    # cavity, darker deeper inside
    depth = (1 - (U / Wi) ** 2 - (V / (h + 1.0)) ** 2).clamp(0, 1)
    img = img + (face.cavity * (1.25 - 0.5 * depth) - img) * cavity

    # tongue: rises into the opening for dentals and laterals
    t_cy = col(S * (1.5 - 4.5 * tongue)) + 1.2 * h
    t_ry = col(S * (2.5 + 2.5 * tongue))
    ellipse = (1 - (U / (0.6 * Wi + 1e-3)) ** 2) - ((V - t_cy) / t_ry) ** 2
    img = img + (0.6 * face.skin - img) * (_soft(ellipse, 0.15) * cavity * col(0.4 + 0.6 * tongue))

    # teeth: upper band under the upper lip (over the lower lip when biting), lower band on
    # wide openings; darker gaps between teeth
    tooth = face.teeth * (1 - 0.2 * torch.exp(-((torch.remainder(U / (S * 4.3), 1.0) - 0.5) / 0.09) ** 2))
    th_u = col(S * 3.8 * teeth)
    band_u = _soft(V - y_ui + 1.0) * _soft(y_ui + th_u - V) * (_soft(0.72 * Wi - au + col(3.0 * bite)) * col(teeth))
    upper = band_u * torch.maximum(cavity, col(bite) * lips)
    th_l = col(S * 2.8 * teeth * (1.6 * o - 0.35).clamp(0, 1))
    lower = _soft(V - y_li + th_l) * _soft(y_li + 1.0 - V) * (_soft(0.6 * Wi - au) * (th_l > 0.05)) * cavity
    img = img + (tooth - img) * (upper + lower).clamp(max=1.0)
    return img


def render(params: torch.Tensor, face: Appearance, gen: torch.Generator, pose: Optional[torch.Tensor] = None,
           fps: int = 25) -> torch.Tensor:
    """Draw the mouth for articulator values ``params (T, 6)`` (see
    :data:`preparation.synthetic.visemes.PARAMS`).

    The face is drawn in head coordinates (lip seam at pixel (48, 52), the mouth layers
    only on the window they can reach) and moved by the head pose with one bilinear warp.

    Args:
        params: Per-frame open, width, round, teeth, tongue, bite.
        face: Speaker appearance.
        gen: Generator for head motion, light and sensor noise.
        pose: Head motion ``(T, 4)`` (drawn from ``gen`` when ``None``).
        fps: Frame rate (for the speed of the light change).

    Returns:
        uint8 tensor ``(T, 96, 96)``.
    """
    T = params.size(0)
    if pose is None:
        pose = head_pose(T, face, gen)
    p = params.float().clamp(-1.0, 1.5)
    S = face.mouth_scale
    origin = (SIZE / 2, SIZE / 2 + 4.0)  # canvas pixel of the head-coordinate origin
    u = torch.arange(SIZE, dtype=torch.float32) + 0.5 - origin[0]
    v = torch.arange(SIZE, dtype=torch.float32) + 0.5 - origin[1]
    mean_w = float(S * (16.5 + 7.0 * p[:, 1].clamp(0, 1).mean() - 5.5 * p[:, 2].clamp(0, 1).mean()))
    skin = _skin(face, mean_w, u.view(1, -1), v.view(-1, 1))  # (H, W)

    # window the mouth layers can reach (lips, teeth, tongue, the shadow under the lip)
    w_max = S * (16.5 + 7.0 * float(p[:, 1].clamp(0, 1).max())) + 6.0
    h_max = S * (0.35 + 10.5 * float(p[:, 0].clamp_min(0).max()))
    top = -(0.8 * h_max + S * face.upper_lip * 6.2 * 1.25) - 3.0
    bottom = 1.2 * h_max + S * face.lower_lip * 7.5 + 13.0
    c0, c1 = max(0, int(math.floor(origin[0] - w_max))), min(SIZE, int(math.ceil(origin[0] + w_max)))
    r0, r1 = max(0, int(math.floor(origin[1] + top))), min(SIZE, int(math.ceil(origin[1] + bottom)))
    canvas = skin.expand(T, SIZE, SIZE).clone()
    canvas[:, r0:r1, c0:c1] = _mouth(p, face, skin[r0:r1, c0:c1], u[c0:c1], v[r0:r1])

    # head motion: output pixel -> canvas pixel, as an affine map in normalised coordinates
    dx = face.center[0] + pose[:, 0]
    dy = face.center[1] + pose[:, 1]
    cos, sin, zoom = torch.cos(pose[:, 2]), torch.sin(pose[:, 2]), pose[:, 3]
    half = SIZE / 2
    # input = A @ output + b, separable over the output axes: x part (T, 1, W) + y part (T, H, 1)
    c = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / half - 1  # normalised pixel centres
    cx_, cy_ = c.view(1, 1, SIZE), c.view(1, SIZE, 1)
    col = lambda x: x.view(T, 1, 1)  # noqa: E731
    bx = -(cos * dx + sin * dy) / (half * zoom)
    by = -(-sin * dx + cos * dy) / (half * zoom)
    gx = col(cos / zoom) * cx_ + (col(sin / zoom) * cy_ + col(bx))
    gy = col(-sin / zoom) * cx_ + (col(cos / zoom) * cy_ + col(by))
    grid = torch.stack([gx, gy], dim=-1)  # (T, H, W, 2)
    img = F.grid_sample(canvas.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]

    # light: slow global change, a slowly swinging side light, vignetting; sensor noise
    t = torch.arange(T, dtype=torch.float32) / fps
    phase = float(torch.rand((), generator=gen)) * 2 * math.pi
    period = 4.0 + 6.0 * float(torch.rand((), generator=gen))
    gain = 1.0 + 0.07 * torch.sin(2 * math.pi * t / period + phase)  # (T,)
    side = 0.08 * face.light_dir * (1.0 + 0.3 * torch.sin(2 * math.pi * t / (1.7 * period)))
    light = col(gain) * (1.0 + 0.5 * col(side) * cx_)  # (T, 1, W)
    vignette = 1.0 - 0.1 * cx_[0] ** 2 - 0.06 * cy_[0]  # (H, W)
    img = img * light * vignette
    img = img + face.noise * torch.randn(img.shape, generator=gen)
    return img.clamp(0, 255).round().to(torch.uint8)
